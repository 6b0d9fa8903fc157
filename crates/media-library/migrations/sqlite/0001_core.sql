-- Riptide library schema, version 1 (SQLite). Never edit a released
-- migration: add a new one (with the same version in ../postgres).

-- Films matched to TMDB: the brief's table, as given.
CREATE TABLE movies (
    id INTEGER PRIMARY KEY,
    tmdb_id INTEGER NOT NULL UNIQUE,
    title TEXT,
    year INTEGER,
    rating REAL,
    file_path TEXT,
    video_codec TEXT,
    audio_codec TEXT
);

-- Every video file a scan found, matched (movie_id set) or not. The parsed
-- release name and the probe results live here; size + mtime_ns let a
-- rescan skip files that did not change.
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    -- FALSE once a scan of its folder no longer finds it; the row (and the
    -- watch progress pointing at it) is kept in case it comes back.
    present BOOLEAN NOT NULL DEFAULT TRUE,
    kind TEXT NOT NULL CHECK (kind IN ('movie', 'episode')),
    title TEXT NOT NULL,
    year INTEGER,
    season INTEGER,
    episode INTEGER,
    resolution TEXT,
    source TEXT,
    release_group TEXT,
    edition TEXT,
    language TEXT,
    container TEXT,
    video_codec TEXT,
    audio_codec TEXT,
    -- Every audio track's codec, comma-separated, for codec search.
    audio_codecs TEXT,
    width INTEGER,
    height INTEGER,
    duration REAL,
    -- Set when ffprobe failed or the file is empty: reported, not listed.
    probe_error TEXT,
    -- Lower-case, accent-free words of every title the file is known by.
    search_text TEXT NOT NULL,
    movie_id INTEGER REFERENCES movies(id) ON DELETE SET NULL,
    -- Last TMDB search that found nothing (unix seconds).
    tmdb_checked_at INTEGER,
    scanned_at INTEGER NOT NULL
);
CREATE INDEX files_movie_id ON files(movie_id);

-- Torrents the engine knows: downloading, seeding, imported.
CREATE TABLE torrents (
    info_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    save_path TEXT NOT NULL,
    total_bytes INTEGER NOT NULL,
    added_at INTEGER NOT NULL,
    completed_at INTEGER,
    movie_id INTEGER REFERENCES movies(id) ON DELETE SET NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at INTEGER NOT NULL
);

CREATE TABLE watch_progress (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    position_s REAL NOT NULL,
    finished BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, file_id)
);

-- Subtitles of a video: sidecar files, embedded tracks, downloads.
CREATE TABLE subtitles (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('sidecar', 'embedded', 'download')),
    -- The sidecar's path, or "stream:N" for embedded track N.
    locator TEXT NOT NULL,
    language TEXT,
    format TEXT NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    forced BOOLEAN NOT NULL DEFAULT FALSE,
    offset_ms INTEGER NOT NULL DEFAULT 0,
    UNIQUE (file_id, locator)
);
