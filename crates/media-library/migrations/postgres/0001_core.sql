-- Riptide library schema, version 1 (PostgreSQL). Same tables and columns
-- as ../sqlite/0001_core.sql; BIGINT/DOUBLE PRECISION so that both
-- backends decode to i64/f64.

CREATE TABLE movies (
    id BIGSERIAL PRIMARY KEY,
    tmdb_id BIGINT NOT NULL UNIQUE,
    title TEXT,
    year BIGINT,
    rating DOUBLE PRECISION,
    file_path TEXT,
    video_codec TEXT,
    audio_codec TEXT
);

CREATE TABLE files (
    id BIGSERIAL PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    present BOOLEAN NOT NULL DEFAULT TRUE,
    kind TEXT NOT NULL CHECK (kind IN ('movie', 'episode')),
    title TEXT NOT NULL,
    year BIGINT,
    season BIGINT,
    episode BIGINT,
    resolution TEXT,
    source TEXT,
    release_group TEXT,
    edition TEXT,
    language TEXT,
    container TEXT,
    video_codec TEXT,
    audio_codec TEXT,
    audio_codecs TEXT,
    width BIGINT,
    height BIGINT,
    duration DOUBLE PRECISION,
    probe_error TEXT,
    search_text TEXT NOT NULL,
    movie_id BIGINT REFERENCES movies(id) ON DELETE SET NULL,
    tmdb_checked_at BIGINT,
    scanned_at BIGINT NOT NULL
);
CREATE INDEX files_movie_id ON files(movie_id);

CREATE TABLE torrents (
    info_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    save_path TEXT NOT NULL,
    total_bytes BIGINT NOT NULL,
    added_at BIGINT NOT NULL,
    completed_at BIGINT,
    movie_id BIGINT REFERENCES movies(id) ON DELETE SET NULL
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

CREATE TABLE watch_progress (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_id BIGINT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    position_s DOUBLE PRECISION NOT NULL,
    finished BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, file_id)
);

CREATE TABLE subtitles (
    id BIGSERIAL PRIMARY KEY,
    file_id BIGINT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('sidecar', 'embedded', 'download')),
    locator TEXT NOT NULL,
    language TEXT,
    format TEXT NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    forced BOOLEAN NOT NULL DEFAULT FALSE,
    offset_ms BIGINT NOT NULL DEFAULT 0,
    UNIQUE (file_id, locator)
);
