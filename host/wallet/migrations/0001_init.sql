-- Network wallets (docs/wallet.md §5): one row per holder. The money lives
-- in the ledger; this row keeps the level and the limit posted at opening.
CREATE TABLE wal_wallets (
    holder      TEXT PRIMARY KEY,
    level       INTEGER NOT NULL,
    credit      BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
