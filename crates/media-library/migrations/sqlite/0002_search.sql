-- Version 2: full-text title search. FTS5 over files.search_text
-- (external content: the text lives once, in files), kept in sync by
-- triggers. unicode61 with remove_diacritics 2 folds accents, so "amelie"
-- matches even text that was stored before Rust-side folding.
CREATE VIRTUAL TABLE files_fts USING fts5(
    search_text,
    content = 'files',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER files_fts_insert AFTER INSERT ON files BEGIN
    INSERT INTO files_fts(rowid, search_text) VALUES (new.id, new.search_text);
END;

CREATE TRIGGER files_fts_delete AFTER DELETE ON files BEGIN
    INSERT INTO files_fts(files_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
END;

CREATE TRIGGER files_fts_update AFTER UPDATE OF search_text ON files BEGIN
    INSERT INTO files_fts(files_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
    INSERT INTO files_fts(rowid, search_text) VALUES (new.id, new.search_text);
END;

-- Index the rows a version-1 database already has.
INSERT INTO files_fts(files_fts) VALUES ('rebuild');
