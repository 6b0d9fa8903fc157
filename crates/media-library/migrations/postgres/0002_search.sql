-- Version 2: full-text title search. A generated tsvector over
-- files.search_text ('simple': no stemming, titles are names) with a GIN
-- index; prefix queries use to_tsquery('simple', 'word:*'). Existing rows
-- are computed by the ALTER itself.
ALTER TABLE files
    ADD COLUMN search_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED;

CREATE INDEX files_search_tsv ON files USING GIN (search_tsv);
