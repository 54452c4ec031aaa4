-- valuechip registry schema, version 1 (docs/registry.md).
-- Portable SQL (docs/ledger.md §10): TEXT, BIGINT and INTEGER columns only;
-- times as BIGINT Unix microseconds; binary values (sealed keys) as hex text.

-- Terminals: DE 41 identity, DE 42 merchant, the terminal master key sealed
-- under "tmk/<id>" and its KCV (not secret: printed by `terminal list`).
CREATE TABLE reg_terminals (
    id          TEXT   NOT NULL PRIMARY KEY,
    merchant_id TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    tmk_sealed  TEXT   NOT NULL,
    tmk_kcv     TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- The current sign-on session of a terminal: its working key, sealed under
-- "wk/<terminal>", and the seed handed out with it.
CREATE TABLE reg_sessions (
    terminal_id  TEXT   NOT NULL PRIMARY KEY,
    wk_sealed    TEXT   NOT NULL,
    wk_kcv       TEXT   NOT NULL,
    seed_id      BIGINT NOT NULL,
    signed_on_at BIGINT NOT NULL
);

-- Transaction-number seeds (docs/iso8583.md §4, §7). seed_id is unique over
-- all terminals and never reused (rows are kept after expiry; only the key
-- is wiped). not_after is the seed's own end as sent in DF06; valid_until is
-- when the server stops accepting it: not_after, or the end of the grace
-- period after the terminal's next sign-on, whichever is earlier.
CREATE TABLE reg_seeds (
    seed_id     BIGINT NOT NULL PRIMARY KEY,
    terminal_id TEXT   NOT NULL,
    key_sealed  TEXT   NOT NULL,
    key_kcv     TEXT   NOT NULL,
    issued_at   BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    valid_until BIGINT NOT NULL
);

CREATE INDEX reg_seeds_terminal ON reg_seeds (terminal_id, valid_until);

CREATE TABLE reg_cards (
    card_id     TEXT    NOT NULL PRIMARY KEY,
    currency    TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    max_balance BIGINT  NOT NULL,
    key_version INTEGER NOT NULL,
    holder_ref  TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    issued_at   BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE INDEX reg_cards_status ON reg_cards (status);

-- Change versions of the card list and the terminal list: one row each,
-- bumped in the transaction that changes the list, so a reader that saw
-- version V has seen every change up to V (docs/registry.md §4).
CREATE TABLE reg_versions (
    name    TEXT   NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
);

INSERT INTO reg_versions (name, version) VALUES ('cards', 0);
INSERT INTO reg_versions (name, version) VALUES ('terminals', 0);

-- One row per change, keyed by its version.
CREATE TABLE reg_card_changes (
    version    BIGINT NOT NULL PRIMARY KEY,
    card_id    TEXT   NOT NULL,
    status     TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    changed_at BIGINT NOT NULL
);

CREATE TABLE reg_terminal_changes (
    version     BIGINT NOT NULL PRIMARY KEY,
    terminal_id TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    changed_at  BIGINT NOT NULL
);
