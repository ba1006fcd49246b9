-- 000_schema down: drops the application tables and everything in them. Only for scratch and
-- demo databases; pgsplit migrate --down 000 asks for nothing more than this file says.
DROP TABLE IF EXISTS property_interactions;
DROP TABLE IF EXISTS conversations;
DROP TABLE IF EXISTS properties;
DROP TABLE IF EXISTS leads;
