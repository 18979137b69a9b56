-- Marks the file as journeyd's in the SQLite header's application id (offset 68), so that tools
-- (`file`, `sqlite3 .dbinfo`) and journeyd itself can tell its databases from other programs'.
-- `Store::open` refuses a file that carries another application's id, and, from this version on,
-- one that does not carry journeyd's. 0x4A524E44 is "JRND" in ASCII.
PRAGMA application_id = 1246907972;
