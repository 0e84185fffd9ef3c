-- Tasks: the one resource of the API. utf8mb4 so titles hold any Unicode text (VARCHAR counts characters).
CREATE TABLE IF NOT EXISTS tasks (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    title       VARCHAR(200)    NOT NULL,
    description VARCHAR(2000)   NULL,
    done        BOOLEAN         NOT NULL DEFAULT FALSE,
    created_at  DATETIME(6)     NOT NULL,
    updated_at  DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    -- Serves `GET /api/tasks?done=...` with keyset pagination on id.
    KEY tasks_done_id (done, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
