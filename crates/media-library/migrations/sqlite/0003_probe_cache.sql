-- Version 3: ffprobe results by (file name, size, mtime), so a film that
-- was moved or imported (import keeps the mtime) or a database rebuilt
-- from scratch is not probed again.
CREATE TABLE probe_cache (
    file_name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    -- JSON of media_library::MediaSummary; NULL when ffprobe failed.
    info TEXT,
    error TEXT,
    probed_at INTEGER NOT NULL,
    PRIMARY KEY (file_name, size, mtime_ns)
);
