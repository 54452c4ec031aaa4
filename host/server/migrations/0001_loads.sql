-- Load authorisations of the money server (docs/server.md §3): what each
-- 0200 asked and what its 0210 answered, written before the ledger posting.
-- The ledger transaction of the same key holds the state
-- (in_progress/completed/reversed). MACs as hex text (docs/ledger.md §10).
CREATE TABLE srv_loads (
    load_key       TEXT PRIMARY KEY,
    terminal_id    TEXT NOT NULL,
    merchant_id    TEXT NOT NULL,
    stan           TEXT NOT NULL,
    transmission   TEXT NOT NULL,
    card_id        TEXT NOT NULL,
    atc            BIGINT NOT NULL,
    amount         BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    balance_before BIGINT NOT NULL,
    key_version    INTEGER NOT NULL,
    s1             TEXT NOT NULL,
    s2             TEXT NOT NULL,
    date_time      TEXT NOT NULL,
    auth_ref       BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX srv_loads_card_atc ON srv_loads (card_id, atc);
CREATE INDEX srv_loads_original ON srv_loads (terminal_id, stan, transmission);
