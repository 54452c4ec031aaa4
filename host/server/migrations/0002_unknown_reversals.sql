-- Reversals (0400/0420) that named a load the server did not know
-- (docs/server.md §3 row 18): a 0200 with this terminal, STAN and DE 7
-- arriving later (delayed behind its own reversal) is refused, never funded.
CREATE TABLE srv_unknown_reversals (
    terminal_id  TEXT NOT NULL,
    stan         TEXT NOT NULL,
    transmission TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (terminal_id, stan, transmission)
);
