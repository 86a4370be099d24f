-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d), as the
-- POSTGRES_USER of docker-compose.yml, which therefore owns them. Each service owns its own database
-- and reaches it through LIANHU_<SERVICE>_DATABASE_URL; no service reads another's tables.
CREATE DATABASE lianhu_intake;
CREATE DATABASE lianhu_registry;
CREATE DATABASE lianhu_routing;
CREATE DATABASE lianhu_notify;
