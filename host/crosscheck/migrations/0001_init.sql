-- Second channel (docs/crosscheck.md §4): card log records whose TC verified,
-- the ATC window of each upload, and refused records kept as evidence.
CREATE TABLE xchk_records (
    card_id     TEXT NOT NULL,
    atc         BIGINT NOT NULL,
    tc          TEXT NOT NULL,
    record      TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (card_id, atc, tc)
);
CREATE TABLE xchk_coverage (
    card_id     TEXT NOT NULL,
    from_atc    BIGINT NOT NULL,
    to_atc      BIGINT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (card_id, from_atc, to_atc)
);
CREATE TABLE xchk_refused (
    card_id     TEXT NOT NULL,
    record      TEXT NOT NULL,
    atc         BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (card_id, record)
);
