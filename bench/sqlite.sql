-- SQLite workload for the labyrinth benchmark (bench/run.sh), run as
--   sqlite3 :memory: '.read bench/sqlite.sql'
-- An in-memory database, so the page cache, the b-trees, the parser and the
-- sorter all live on the heap and disk speed plays no part.
-- Row data comes from a fixed-seed generator (a recursive CTE), so every run
-- does the same work.

PRAGMA cache_size = -65536;

CREATE TABLE item (
	id INTEGER PRIMARY KEY,
	grp INTEGER NOT NULL,
	name TEXT NOT NULL,
	body TEXT NOT NULL,
	price REAL NOT NULL
);

-- 200,000 rows with strings of varied length (8..200 bytes in body).
WITH RECURSIVE gen(i, x) AS (
	SELECT 1, 12345
	UNION ALL
	SELECT i + 1, (x * 1103515245 + 12345) % 2147483648 FROM gen WHERE i < 200000
)
INSERT INTO item (id, grp, name, body, price)
SELECT i, x % 997, 'item-' || (x % 100003),
       substr(hex(x * 7919) || printf('%.200c', '*'), 1, 8 + x % 193),
       (x % 100000) / 100.0
FROM gen;

CREATE INDEX item_grp ON item (grp);
CREATE INDEX item_name ON item (name);

-- Aggregates and sorts: the sorter and hash tables allocate as they go.
SELECT grp, count(*), sum(price), max(length(body)) FROM item GROUP BY grp ORDER BY 3 DESC LIMIT 5;
SELECT name, count(*) AS n FROM item GROUP BY name HAVING n > 3 ORDER BY n DESC, name LIMIT 5;

-- A self-join through the index.
SELECT count(*) FROM item a JOIN item b ON a.grp = b.grp AND b.id = a.id + 997 WHERE a.price > 500;

-- Updates that change row sizes, then deletes that free pages everywhere.
UPDATE item SET body = body || body WHERE id % 3 = 0;
DELETE FROM item WHERE id % 5 = 1;
INSERT INTO item (grp, name, body, price)
	SELECT grp, name || '-copy', upper(body), price * 2 FROM item WHERE id % 4 = 0;
SELECT count(*), sum(length(body)) FROM item;
