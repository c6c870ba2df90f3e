-- sqlite.sql: workload for tests/programs.sh, fed to sqlite3 on a new
-- database file. Every query has a deterministic result.
.bail on
PRAGMA journal_mode = WAL;
PRAGMA cache_size = -8000;
PRAGMA synchronous = OFF;

CREATE TABLE t (
  id INTEGER PRIMARY KEY,
  grp INTEGER NOT NULL,
  name TEXT NOT NULL,
  val REAL NOT NULL,
  payload BLOB
);

BEGIN;
WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < 300000)
INSERT INTO t (id, grp, name, val, payload)
SELECT x,
       (x * 7919) % 1000,
       printf('n%07d-%s', (x * 104729) % 1000003, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26, 1 + x % 13)),
       ((x * 2654435761) % 1000000) / 1000.0,
       CASE WHEN x % 50 = 0 THEN zeroblob(100 + x % 3000) ELSE NULL END
FROM seq;
COMMIT;

CREATE INDEX t_grp_val ON t (grp, val);
CREATE INDEX t_name ON t (name);

SELECT 'rows', count(*), sum(grp), round(sum(val), 3), sum(length(payload)) FROM t;
SELECT 'groups', count(DISTINCT grp), min(grp), max(grp) FROM t;
SELECT grp, count(*), round(avg(val), 4), round(min(val), 3), round(max(val), 3)
  FROM t GROUP BY grp ORDER BY count(*) DESC, grp LIMIT 5;
SELECT name, val FROM t WHERE name >= 'n05' ORDER BY name LIMIT 5;
SELECT 'range', count(*), round(sum(val), 3) FROM t WHERE grp BETWEEN 100 AND 199 AND val < 250.0;
SELECT 'letters', substr(name, 10, 1) AS l, count(*) FROM t GROUP BY l ORDER BY l LIMIT 30;

-- A self-join and a window function, both allocation-hungry.
SELECT 'join', count(*) FROM t a JOIN t b ON b.id = a.id + 1 AND b.grp > a.grp;
SELECT 'window', id, grp, rk FROM (
  SELECT id, grp, rank() OVER (PARTITION BY grp ORDER BY val DESC, id) AS rk FROM t
) WHERE rk = 1 ORDER BY grp LIMIT 5;

-- Big strings, then churn: delete, update, vacuum, check.
SELECT 'concat', length(group_concat(name, ',')) FROM (SELECT name FROM t ORDER BY name LIMIT 50000);
DELETE FROM t WHERE id % 3 = 0;
UPDATE t SET name = name || '-' || grp, val = val * 2 WHERE id % 5 = 0;
SELECT 'after', count(*), round(sum(val), 3), max(length(name)) FROM t;
PRAGMA journal_mode = DELETE;
VACUUM;
PRAGMA integrity_check;
SELECT 'md5ish', sum((id * 31 + grp) % 1000003), count(DISTINCT name) FROM t;
