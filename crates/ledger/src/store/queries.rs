//! Every SQL statement of the ledger, as methods on [`Tx`].

use sqlx::Row;

use super::rows::*;
use super::{Backend, Tx, on_tx};
use crate::error::Result;

/// `FOR UPDATE` where row locks exist; SQLite's `BEGIN IMMEDIATE` already
/// holds the whole file.
fn lock_clause(backend: Backend, lock: bool) -> &'static str {
    match (backend, lock) {
        (Backend::Postgres, true) => " FOR UPDATE",
        _ => "",
    }
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("integers serialize")
}

impl Tx {
    /// A user's pools, active or not, in matching order.
    pub(crate) async fn user_pools(&mut self, owner: &str, lock: bool) -> Result<Vec<PoolRow>> {
        let sql = format!(
            "SELECT {POOL_COLUMNS} FROM pools WHERE kind = 'user' AND owner = $1 \
             ORDER BY position, id{}",
            lock_clause(self.backend(), lock)
        );
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, PoolRow>(sqlx::AssertSqlSafe(sql)).bind(owner).fetch_all(c).await?
        }))
    }

    /// Pools by id, in id order (the lock order).
    pub(crate) async fn pools_by_id(&mut self, ids: &[i64], lock: bool) -> Result<Vec<PoolRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let lock = lock_clause(self.backend(), lock);
        Ok(match self {
            Tx::Sqlite(t) => {
                let sql = format!(
                    "SELECT {POOL_COLUMNS} FROM pools \
                     WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id"
                );
                sqlx::query_as::<_, PoolRow>(sqlx::AssertSqlSafe(sql))
                    .bind(ids_json(ids))
                    .fetch_all(&mut **t)
                    .await?
            }
            Tx::Postgres(t) => {
                let sql = format!(
                    "SELECT {POOL_COLUMNS} FROM pools WHERE id = ANY($1) ORDER BY id{lock}"
                );
                sqlx::query_as::<_, PoolRow>(sqlx::AssertSqlSafe(sql))
                    .bind(ids.to_vec())
                    .fetch_all(&mut **t)
                    .await?
            }
        })
    }

    /// A project's pool by name.
    pub(crate) async fn project(&mut self, name: &str, lock: bool) -> Result<Option<PoolRow>> {
        let sql = format!(
            "SELECT {POOL_COLUMNS} FROM pools WHERE kind = 'project' AND owner = $1{}",
            lock_clause(self.backend(), lock)
        );
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, PoolRow>(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(c).await?
        }))
    }

    /// Inserts a pool; returns its id.
    pub(crate) async fn insert_pool(&mut self, p: &PoolRow) -> Result<i64> {
        const SQL: &str = "INSERT INTO pools (kind, owner, name, position, active, balance, cap, \
             grant_value, grant_interval, grant_anchor, project_id, pattern, config, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id";
        Ok(on_tx!(self, c => {
            sqlx::query_scalar::<_, i64>(SQL)
                .bind(&p.kind).bind(&p.owner).bind(&p.name).bind(p.position).bind(p.active)
                .bind(p.balance).bind(p.cap).bind(p.grant_value).bind(p.grant_interval)
                .bind(p.grant_anchor).bind(p.project_id).bind(&p.pattern).bind(&p.config)
                .bind(p.created_at)
                .fetch_one(c).await?
        }))
    }

    /// Writes the mutable columns of every pool given, in one statement.
    pub(crate) async fn update_pools(&mut self, rows: &[PoolRow]) -> Result<()> {
        const COLUMNS: [&str; 10] = [
            "balance",
            "cap",
            "grant_value",
            "grant_interval",
            "grant_anchor",
            "project_id",
            "pattern",
            "active",
            "position",
            "config",
        ];
        const PG_TYPES: &str = "balance bigint, cap bigint, grant_value bigint, \
             grant_interval bigint, grant_anchor bigint, project_id bigint, pattern text, \
             active bigint, position bigint, config text";
        self.update_json("pools", &COLUMNS, PG_TYPES, rows).await
    }

    /// `UPDATE table SET columns FROM` a JSON array of rows keyed by `id`:
    /// one statement for any number of rows, on either database.
    async fn update_json<T: serde::Serialize>(
        &mut self,
        table: &str,
        columns: &[&str],
        pg_types: &str,
        rows: &[T],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let set = columns
            .iter()
            .map(|c| format!("{c} = x.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let json = serde_json::to_string(rows).expect("rows serialize");
        match self {
            Tx::Sqlite(t) => {
                let mut fields = vec!["id"];
                fields.extend_from_slice(columns);
                let sql = format!(
                    "UPDATE {table} SET {set} FROM (SELECT {}) AS x WHERE {table}.id = x.id",
                    sqlite_record(&fields, None)
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(json)
                    .execute(&mut **t)
                    .await?;
            }
            Tx::Postgres(t) => {
                let sql = format!(
                    "UPDATE {table} AS t SET {set} FROM \
                     jsonb_to_recordset($1::jsonb) AS x(id bigint, {pg_types}) WHERE t.id = x.id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(json)
                    .execute(&mut **t)
                    .await?;
            }
        }
        Ok(())
    }

    /// Appends journal entries, keeping their order in the ids.
    pub(crate) async fn insert_journal(&mut self, rows: &[JournalRow]) -> Result<()> {
        const COLUMNS: [&str; 12] = [
            "time",
            "pool_id",
            "account",
            "delta",
            "balance_after",
            "kind",
            "user_name",
            "server_name",
            "server_key",
            "period",
            "actor",
            "reason",
        ];
        const PG_TYPES: &str = "time bigint, pool_id bigint, account text, delta bigint, \
             balance_after bigint, kind text, user_name text, server_name text, \
             server_key text, period bigint, actor text, reason text";
        self.insert_json("journal", &COLUMNS, PG_TYPES, rows).await
    }

    /// Records settled periods. A period settled before violates the primary
    /// key and fails the transaction: the database guards rule 7 too.
    pub(crate) async fn insert_charges(&mut self, rows: &[ChargeRow]) -> Result<()> {
        const COLUMNS: [&str; 6] = [
            "server_key",
            "period",
            "charged_at",
            "amount",
            "from_project",
            "paid",
        ];
        const PG_TYPES: &str = "server_key text, period bigint, charged_at bigint, \
             amount bigint, from_project bigint, paid bigint";
        self.insert_json("charges", &COLUMNS, PG_TYPES, rows).await
    }

    async fn insert_json<T: serde::Serialize>(
        &mut self,
        table: &str,
        columns: &[&str],
        pg_types: &str,
        rows: &[T],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(rows).expect("rows serialize");
        let list = columns.join(", ");
        match self {
            Tx::Sqlite(t) => {
                let sql = format!(
                    "INSERT INTO {table} ({list}) SELECT {list} FROM (SELECT {}) ORDER BY ord",
                    sqlite_record(columns, Some("ord"))
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(json)
                    .execute(&mut **t)
                    .await?;
            }
            Tx::Postgres(t) => {
                let sql = format!(
                    "INSERT INTO {table} ({list}) SELECT {list} FROM \
                     ROWS FROM (jsonb_to_recordset($1::jsonb) AS ({pg_types})) \
                     WITH ORDINALITY AS x({list}, ord) ORDER BY ord"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(json)
                    .execute(&mut **t)
                    .await?;
            }
        }
        Ok(())
    }

    /// A server by its start identity.
    pub(crate) async fn server_by_key(
        &mut self,
        key: &str,
        lock: bool,
    ) -> Result<Option<ServerRow>> {
        let sql = format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE server_key = $1{}",
            lock_clause(self.backend(), lock)
        );
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(sql)).bind(key).fetch_optional(c).await?
        }))
    }

    /// Running servers with a period due at `now`, oldest first. On
    /// PostgreSQL rows another replica is settling are skipped, not waited for.
    pub(crate) async fn due_servers(&mut self, now: i64, limit: i64) -> Result<Vec<ServerRow>> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE state = 'running' \
             AND next_charge_at <= $1 ORDER BY next_charge_at, id LIMIT $2{lock}"
        );
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(sql))
                .bind(now).bind(limit).fetch_all(c).await?
        }))
    }

    /// Running servers with a period due at `now` that draw on any of these
    /// user pools or projects: what must be settled before one of those
    /// pools changes, so that every pool's history stays in time order.
    pub(crate) async fn due_servers_sharing(
        &mut self,
        pool_ids: &[i64],
        project_ids: &[i64],
        now: i64,
    ) -> Result<Vec<ServerRow>> {
        if pool_ids.is_empty() && project_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Two index-driven halves (the servers of these pools; the servers of
        // the pools in these projects) instead of one OR across a join, which
        // both databases answer with a scan of every server ever recorded.
        Ok(match self {
            Tx::Sqlite(t) => {
                let sql = format!(
                    "SELECT {SERVER_COLUMNS} FROM servers WHERE state = 'running' \
                     AND next_charge_at <= $1 AND id IN ( \
                     SELECT id FROM servers WHERE state = 'running' \
                     AND pool_id IN (SELECT value FROM json_each($2)) \
                     UNION SELECT id FROM servers WHERE state = 'running' AND pool_id IN \
                     (SELECT id FROM pools WHERE project_id IN (SELECT value FROM json_each($3)))) \
                     ORDER BY id"
                );
                sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(ids_json(pool_ids))
                    .bind(ids_json(project_ids))
                    .fetch_all(&mut **t)
                    .await?
            }
            Tx::Postgres(t) => {
                let sql = format!(
                    "SELECT {SERVER_COLUMNS} FROM servers WHERE state = 'running' \
                     AND next_charge_at <= $1 AND id IN ( \
                     SELECT id FROM servers WHERE state = 'running' AND pool_id = ANY($2) \
                     UNION SELECT id FROM servers WHERE state = 'running' AND pool_id IN \
                     (SELECT id FROM pools WHERE project_id = ANY($3))) \
                     ORDER BY id FOR UPDATE"
                );
                sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(pool_ids.to_vec())
                    .bind(project_ids.to_vec())
                    .fetch_all(&mut **t)
                    .await?
            }
        })
    }

    /// Servers in one state.
    pub(crate) async fn servers_in_state(&mut self, state: &str) -> Result<Vec<ServerRow>> {
        let sql = format!("SELECT {SERVER_COLUMNS} FROM servers WHERE state = $1 ORDER BY id");
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(sql)).bind(state).fetch_all(c).await?
        }))
    }

    /// A user's servers that are pending, running or stopping, or that ended
    /// at or after `ended_since`.
    pub(crate) async fn user_servers(
        &mut self,
        user: &str,
        ended_since: i64,
    ) -> Result<Vec<ServerRow>> {
        let sql = format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE user_name = $1 \
             AND (state IN ('pending', 'running', 'stopping') OR ended_at >= $2) ORDER BY id"
        );
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(sql))
                .bind(user).bind(ended_since).fetch_all(c).await?
        }))
    }

    /// Every server the ledger believes is pending, running or stopping.
    pub(crate) async fn live_servers(&mut self) -> Result<Vec<ServerRow>> {
        let sql = format!(
            "SELECT {SERVER_COLUMNS} FROM servers \
             WHERE state IN ('pending', 'running', 'stopping') ORDER BY id"
        );
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(sql)).fetch_all(c).await?
        }))
    }

    /// Inserts a server; returns its id.
    pub(crate) async fn insert_server(&mut self, s: &ServerRow) -> Result<i64> {
        const SQL: &str = "INSERT INTO servers (server_key, user_name, server_name, pool_id, \
             project_id, billing_value, billing_interval, state, admitted_at, \
             promise_expires_at, ready_at, periods_charged, next_charge_at, stop_reason, \
             ended_at, user_options) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15, $16) RETURNING id";
        Ok(on_tx!(self, c => {
            sqlx::query_scalar::<_, i64>(SQL)
                .bind(&s.server_key).bind(&s.user_name).bind(&s.server_name).bind(s.pool_id)
                .bind(s.project_id).bind(s.billing_value).bind(s.billing_interval)
                .bind(&s.state).bind(s.admitted_at).bind(s.promise_expires_at).bind(s.ready_at)
                .bind(s.periods_charged).bind(s.next_charge_at).bind(&s.stop_reason)
                .bind(s.ended_at).bind(&s.user_options)
                .fetch_one(c).await?
        }))
    }

    /// Writes the mutable columns of every server given, in one statement.
    pub(crate) async fn update_servers(&mut self, rows: &[ServerUpdate]) -> Result<()> {
        const COLUMNS: [&str; 6] = [
            "state",
            "ready_at",
            "periods_charged",
            "next_charge_at",
            "stop_reason",
            "ended_at",
        ];
        const PG_TYPES: &str = "state text, ready_at bigint, periods_charged bigint, \
             next_charge_at bigint, stop_reason text, ended_at bigint";
        self.update_json("servers", &COLUMNS, PG_TYPES, rows).await
    }

    /// Ends every live record of `user`'s server `server_name`: a new start
    /// of the same server means the old one is gone, noticed or not.
    pub(crate) async fn end_live_servers_named(
        &mut self,
        user: &str,
        server_name: &str,
        now: i64,
    ) -> Result<u64> {
        const SQL: &str = "UPDATE servers SET \
             state = CASE WHEN state = 'pending' THEN 'released' ELSE 'stopped' END, \
             ended_at = $3, next_charge_at = NULL \
             WHERE user_name = $1 AND server_name = $2 \
             AND state IN ('pending', 'running', 'stopping')";
        Ok(on_tx!(self, c => {
            sqlx::query(SQL).bind(user).bind(server_name).bind(now).execute(c).await?.rows_affected()
        }))
    }

    /// Live records (pending, running, stopping) of one of a user's servers.
    pub(crate) async fn live_servers_named(
        &mut self,
        user: &str,
        server_name: &str,
    ) -> Result<Vec<ServerRow>> {
        let sql = format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE user_name = $1 AND server_name = $2 \
             AND state IN ('pending', 'running', 'stopping') ORDER BY id"
        );
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(sql))
                .bind(user).bind(server_name).fetch_all(c).await?
        }))
    }

    /// Credits promised to live pending spawns that draw on this user pool
    /// or this project, except a pending start of the server being replaced
    /// (`replaced`: user and server name), which admission is about to end. A spawn draws on its pool's project as it is now,
    /// not as it was at admission: a pool moved to another project takes its
    /// promises along (rule 6).
    pub(crate) async fn promised(
        &mut self,
        pool_id: i64,
        project_id: Option<i64>,
        now: i64,
        replaced: (&str, &str),
    ) -> Result<i64> {
        const SQL: &str = "SELECT CAST(COALESCE(SUM(s.billing_value), 0) AS BIGINT) \
             FROM servers s JOIN pools p ON p.id = s.pool_id \
             WHERE s.state = 'pending' AND s.promise_expires_at > $3 \
             AND (s.pool_id = $1 OR p.project_id = $2) \
             AND NOT (s.user_name = $4 AND s.server_name = $5)";
        let (user, server_name) = replaced;
        Ok(on_tx!(self, c => {
            sqlx::query_scalar::<_, i64>(SQL)
                .bind(pool_id).bind(project_id).bind(now).bind(user).bind(server_name)
                .fetch_one(c).await?
        }))
    }

    /// Releases promises of spawns that never got ready in time.
    pub(crate) async fn expire_promises(&mut self, now: i64) -> Result<u64> {
        const SQL: &str = "UPDATE servers SET state = 'released', ended_at = $1 \
             WHERE state = 'pending' AND promise_expires_at <= $1";
        Ok(on_tx!(self, c => {
            sqlx::query(SQL).bind(now).execute(c).await?.rows_affected()
        }))
    }

    /// A page of an account's journal, newest first, before entry `before`.
    pub(crate) async fn journal_page(
        &mut self,
        account: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(JournalRow, String)>> {
        const SQL: &str = "SELECT j.id, j.time, j.pool_id, j.account, j.delta, j.balance_after, \
             j.kind, j.user_name, j.server_name, j.server_key, j.period, j.actor, j.reason, \
             p.name AS pool_name FROM journal j JOIN pools p ON p.id = j.pool_id \
             WHERE j.account = $1 AND j.id < $2 ORDER BY j.id DESC LIMIT $3";
        let before = before.unwrap_or(i64::MAX);
        let rows = on_tx!(self, c => {
            sqlx::query(SQL).bind(account).bind(before).bind(limit).fetch_all(c).await?
                .into_iter()
                .map(|r| -> Result<(JournalRow, String)> {
                    use sqlx::FromRow;
                    Ok((JournalRow::from_row(&r)?, r.try_get::<String, _>("pool_name")?))
                })
                .collect::<Result<Vec<_>>>()?
        });
        Ok(rows)
    }

    /// Sum of an account's journal per pool, for invariant checks.
    pub(crate) async fn journal_sums(&mut self) -> Result<Vec<(i64, i64, i64)>> {
        const SQL: &str = "SELECT p.id, p.balance, CAST(COALESCE(SUM(j.delta), 0) AS BIGINT) \
             FROM pools p LEFT JOIN journal j ON j.pool_id = p.id GROUP BY p.id, p.balance \
             ORDER BY p.id";
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, (i64, i64, i64)>(SQL).fetch_all(c).await?
        }))
    }

    /// Names of users with pools, in name order, after `after`.
    pub(crate) async fn user_names(&mut self, after: &str, limit: i64) -> Result<Vec<String>> {
        const SQL: &str = "SELECT DISTINCT owner FROM pools WHERE kind = 'user' AND owner > $1 \
             ORDER BY owner LIMIT $2";
        Ok(on_tx!(self, c => {
            sqlx::query_scalar::<_, String>(SQL).bind(after).bind(limit).fetch_all(c).await?
        }))
    }

    /// Project pools in name order, after `after`.
    pub(crate) async fn projects(&mut self, after: &str, limit: i64) -> Result<Vec<PoolRow>> {
        let sql = format!(
            "SELECT {POOL_COLUMNS} FROM pools WHERE kind = 'project' AND owner > $1 \
             ORDER BY owner LIMIT $2"
        );
        Ok(on_tx!(self, c => {
            sqlx::query_as::<_, PoolRow>(sqlx::AssertSqlSafe(sql))
                .bind(after).bind(limit).fetch_all(c).await?
        }))
    }

    /// Users with an active pool in the project, in name order.
    pub(crate) async fn project_members(&mut self, project_id: i64) -> Result<Vec<String>> {
        const SQL: &str = "SELECT DISTINCT owner FROM pools WHERE kind = 'user' \
             AND project_id = $1 AND active = 1 ORDER BY owner";
        Ok(on_tx!(self, c => {
            sqlx::query_scalar::<_, String>(SQL).bind(project_id).fetch_all(c).await?
        }))
    }

    /// Counts of rows, for the operator's overview and for tests.
    pub(crate) async fn count(&mut self, table_and_filter: &'static str) -> Result<i64> {
        let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table_and_filter}");
        Ok(on_tx!(self, c => {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(c).await?
        }))
    }
}

/// `json_extract(value, '$.a') AS a, ...` over `json_each($1)`: the SQLite
/// spelling of PostgreSQL's `jsonb_to_recordset`.
fn sqlite_record(columns: &[&str], ordinal: Option<&str>) -> String {
    let mut fields: Vec<String> = columns
        .iter()
        .map(|c| format!("json_extract(value, '$.{c}') AS {c}"))
        .collect();
    if let Some(ord) = ordinal {
        fields.push(format!("key AS {ord}"));
    }
    format!("{} FROM json_each($1)", fields.join(", "))
}
