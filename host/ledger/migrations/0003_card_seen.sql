-- valuechip ledger schema, version 3: the number of distinct ATCs recorded
-- per card, kept with its last ATC, so that recording an ATC learns the
-- card's gaps in O(1) (LastATC − seen ATCs never reported) instead of reading
-- every ATC of the card (docs/ledger.md §6, §11). Card() still lists the gaps
-- from ledger_card_atcs.
ALTER TABLE ledger_cards ADD COLUMN seen BIGINT NOT NULL DEFAULT 0;
UPDATE ledger_cards SET seen = (SELECT COUNT(*) FROM ledger_card_atcs a WHERE a.card_id = ledger_cards.card_id);
