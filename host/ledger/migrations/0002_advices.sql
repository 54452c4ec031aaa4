-- valuechip ledger schema, version 2: offline debit advices and load
-- completions with their card record (ATC, digest), per-terminal
-- reconciliation batches (docs/ledger.md §6, §11, §12).

-- The merchant of a transaction, and the terminal batch its final state was
-- counted in (0: in progress, or no terminal).
ALTER TABLE ledger_txns ADD COLUMN merchant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE ledger_txns ADD COLUMN batch BIGINT NOT NULL DEFAULT 0;
CREATE INDEX ledger_txns_state ON ledger_txns (state);
CREATE INDEX ledger_txns_batch ON ledger_txns (terminal_id, batch);

-- One row per card record a terminal reported: a debit advice or a load
-- completion. The identity of a record is (card, ATC, digest); a second digest
-- for one (card, ATC) is a duplicate (clone or rolled-back image).
CREATE TABLE ledger_advices (
    card_id      TEXT   NOT NULL,
    atc          BIGINT NOT NULL,
    digest       TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    idem_key     TEXT   NOT NULL,
    request_hash TEXT   NOT NULL,
    terminal_id  TEXT   NOT NULL,
    merchant_id  TEXT   NOT NULL,
    amount       BIGINT NOT NULL,
    currency     TEXT   NOT NULL,
    posting_key  TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    batch        BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (card_id, atc, digest)
);

CREATE INDEX ledger_advices_key ON ledger_advices (idem_key);
CREATE INDEX ledger_advices_batch ON ledger_advices (terminal_id, batch);

-- The open batch of each terminal that ever closed one (a terminal without a
-- row is in batch 1).
CREATE TABLE ledger_terminals (
    terminal_id TEXT   NOT NULL PRIMARY KEY,
    batch       BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Closed batches with the totals they were closed with.
CREATE TABLE ledger_batches (
    terminal_id          TEXT   NOT NULL,
    batch                BIGINT NOT NULL,
    close_key            TEXT   NOT NULL,
    currency             TEXT   NOT NULL,
    loads                BIGINT NOT NULL,
    load_amount          BIGINT NOT NULL,
    load_reversals       BIGINT NOT NULL,
    load_reversal_amount BIGINT NOT NULL,
    debits               BIGINT NOT NULL,
    debit_amount         BIGINT NOT NULL,
    closed_at            BIGINT NOT NULL,
    PRIMARY KEY (terminal_id, batch),
    CONSTRAINT ledger_batches_key UNIQUE (close_key)
);
