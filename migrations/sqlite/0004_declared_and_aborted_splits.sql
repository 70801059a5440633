-- A cutover is remembered from the moment it is declared ('scheduled'),
-- and an abort is remembered too ('aborted'), so routing follows what the
-- store knows whatever cutover objects exist. SQLite cannot change a CHECK
-- constraint: the table is rebuilt with the wider one.
CREATE TABLE cutover_checkpoints_new (
    cutover       TEXT   PRIMARY KEY,
    realm         TEXT   NOT NULL,
    source        TEXT   NOT NULL,
    targets       TEXT   NOT NULL,
    at            BIGINT NOT NULL,
    phase         TEXT   NOT NULL
                  CHECK (phase IN ('scheduled', 'running', 'completed', 'retired', 'aborted')),
    cursor        BIGINT,
    done          BIGINT NOT NULL DEFAULT 0,
    total         BIGINT NOT NULL DEFAULT 0,
    started_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    completed_at  BIGINT,
    retired_at    BIGINT
);
INSERT INTO cutover_checkpoints_new
    SELECT cutover, realm, source, targets, at, phase, cursor, done, total,
           started_at, updated_at, completed_at, retired_at
    FROM cutover_checkpoints;
DROP TABLE cutover_checkpoints;
ALTER TABLE cutover_checkpoints_new RENAME TO cutover_checkpoints;
