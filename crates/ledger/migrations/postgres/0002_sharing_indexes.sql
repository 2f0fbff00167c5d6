-- Index-driven lookups of the running servers that share a pool or project,
-- which admission, readiness and admin changes settle first.
CREATE INDEX servers_running_pool ON servers (pool_id) WHERE state = 'running';
CREATE INDEX pools_by_project ON pools (project_id) WHERE project_id IS NOT NULL;
