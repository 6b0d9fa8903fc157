-- Version 3: ffprobe results by (file name, size, mtime); see
-- ../sqlite/0003_probe_cache.sql.
CREATE TABLE probe_cache (
    file_name TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    info TEXT,
    error TEXT,
    probed_at BIGINT NOT NULL,
    PRIMARY KEY (file_name, size, mtime_ns)
);
