-- A cutover is remembered from the moment it is declared ('scheduled'),
-- and an abort is remembered too ('aborted'), so routing follows what the
-- store knows whatever cutover objects exist.
ALTER TABLE cutover_checkpoints DROP CONSTRAINT cutover_checkpoints_phase_check;
ALTER TABLE cutover_checkpoints ADD CONSTRAINT cutover_checkpoints_phase_check
    CHECK (phase IN ('scheduled', 'running', 'completed', 'retired', 'aborted'));
