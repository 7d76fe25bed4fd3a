-- GitSpy board store, PostgreSQL: the same tables as the SQLite store (store/sqlite.rs).
-- Applied once by `gitspy serve`/`worker` at start-up (store/postgres.rs records it in
-- gitspy_schema_migrations under an advisory lock, so processes starting together apply it once).
--
-- Ids are `COLLATE "C"`: byte order, as SQLite compares TEXT, so `GET /deliveries` pages the same
-- way on both backends whatever the database's default collation is.

-- The event log, raw payloads kept for replay. Deliberately NOT unique on the delivery id: a second
-- row (a delivery applied twice) stays visible to `lookup`.
CREATE TABLE IF NOT EXISTS deliveries (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id    TEXT COLLATE "C" NOT NULL,
    event          TEXT   NOT NULL,
    action         TEXT,
    repository     TEXT,
    received_at_ms BIGINT NOT NULL,
    logged_at_ms   BIGINT NOT NULL,
    payload        BYTEA  NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_id ON deliveries (delivery_id);
CREATE INDEX IF NOT EXISTS deliveries_by_received ON deliveries (received_at_ms);
CREATE INDEX IF NOT EXISTS deliveries_by_logged ON deliveries (logged_at_ms);

-- What committed. The primary key is the claim: `INSERT ... ON CONFLICT DO NOTHING` inside the
-- batch's transaction; a concurrent transaction inserting the same id waits on it and then finds
-- it taken (see ARCHITECTURE.md, "PostgreSQL store").
CREATE TABLE IF NOT EXISTS applied_deliveries (
    delivery_id   TEXT COLLATE "C" PRIMARY KEY,
    applied_at_ms BIGINT NOT NULL,
    applied_by    TEXT
);

-- Fold state as JSON text (not jsonb: stored byte for byte as the SQLite store stores it).
-- `state` is NULL only inside a transaction that has just created the row to lock it.
CREATE TABLE IF NOT EXISTS repos (
    repo_id   BIGINT PRIMARY KEY,
    full_name TEXT,
    state     TEXT
);
CREATE INDEX IF NOT EXISTS repos_by_name ON repos (full_name);
CREATE TABLE IF NOT EXISTS cards (
    repo_id BIGINT NOT NULL,
    number  BIGINT NOT NULL,
    state   TEXT,
    PRIMARY KEY (repo_id, number)
);

-- One row per applied delivery that touched a card: the side effect whose duplication the harness
-- checks.
CREATE TABLE IF NOT EXISTS card_history (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   TEXT COLLATE "C" NOT NULL,
    repo_id       BIGINT NOT NULL,
    number        BIGINT NOT NULL,
    column_name   TEXT,
    applied_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS card_history_by_delivery ON card_history (delivery_id);
