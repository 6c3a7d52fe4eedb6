SELECT source, max(finished_at) FROM import_runs
 WHERE status = 'succeeded' AND source = ANY(:s) GROUP BY source ORDER BY source
