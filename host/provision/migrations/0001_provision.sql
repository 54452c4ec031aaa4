-- Remote installation of the purse (docs/provision.md §5). Portable SQL
-- (docs/ledger.md §10): TEXT/BIGINT/INTEGER, application-generated IDs,
-- times in Unix microseconds.

-- Number allocators: the next card and terminal numbers.
CREATE TABLE prov_counters (
    name       TEXT PRIMARY KEY,
    next_value BIGINT NOT NULL
);
INSERT INTO prov_counters (name, next_value) VALUES ('card', 1);
INSERT INTO prov_counters (name, next_value) VALUES ('terminal', 1);

-- One row per chip (by its key diversification data). status is
-- 'registered' until the purse is installed and personalised, then
-- 'issued'.
CREATE TABLE prov_registrations (
    id          TEXT PRIMARY KEY,
    kdd         TEXT NOT NULL UNIQUE,
    cplc        TEXT NOT NULL,
    ic_serial   TEXT NOT NULL,
    cin         TEXT NOT NULL,
    holder      TEXT NOT NULL,
    card_id     TEXT NOT NULL UNIQUE,
    terminal_id TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    issued_at   BIGINT NOT NULL
);

-- Every installation session, for audit: how it ended and why.
CREATE TABLE prov_sessions (
    id              TEXT PRIMARY KEY,
    registration_id TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT NOT NULL,
    outcome         TEXT NOT NULL,
    error           TEXT NOT NULL,
    exchanges       INTEGER NOT NULL
);
CREATE INDEX prov_sessions_registration ON prov_sessions (registration_id);
