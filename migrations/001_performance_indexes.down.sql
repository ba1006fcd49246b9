-- 001_performance_indexes down: the seed's rollback plan, plus the validation function.
-- DROP INDEX CONCURRENTLY takes no write lock, so the runner runs each drop alone outside a
-- transaction; it deletes version 001 from schema_migrations itself once every drop succeeded.
DROP INDEX CONCURRENTLY IF EXISTS idx_leads_created_scored;
DROP INDEX CONCURRENTLY IF EXISTS idx_leads_score_status_created;
DROP INDEX CONCURRENTLY IF EXISTS idx_leads_hot_leads;
DROP INDEX CONCURRENTLY IF EXISTS idx_leads_search_gin;
DROP INDEX CONCURRENTLY IF EXISTS idx_leads_status_updated;
DROP INDEX CONCURRENTLY IF EXISTS idx_properties_location_price;
DROP INDEX CONCURRENTLY IF EXISTS idx_properties_location_btree;
DROP INDEX CONCURRENTLY IF EXISTS idx_properties_search_common;
DROP INDEX CONCURRENTLY IF EXISTS idx_properties_listing_page;
DROP INDEX CONCURRENTLY IF EXISTS idx_properties_featured;
DROP INDEX CONCURRENTLY IF EXISTS idx_properties_amenities_gin;
DROP INDEX CONCURRENTLY IF EXISTS idx_properties_location_text;
DROP INDEX CONCURRENTLY IF EXISTS idx_conversations_tenant_contact_enhanced;
DROP INDEX CONCURRENTLY IF EXISTS idx_conversations_recent_high_score;
DROP INDEX CONCURRENTLY IF EXISTS idx_property_interactions_analysis;
DROP INDEX CONCURRENTLY IF EXISTS idx_property_interactions_popularity;

DROP FUNCTION IF EXISTS validate_performance_indexes();
