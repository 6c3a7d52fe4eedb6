#!/bin/bash
# Runs once, when the PostGIS container initialises its data folder: a replication role and
# the pg_hba line that lets the replica service stream from the primary.
set -e
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '${CARTECO_REPLICATION_PASSWORD:-replication}';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
