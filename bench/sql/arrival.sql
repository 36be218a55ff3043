-- Benchmark only (bench/run installs and removes it): records when each
-- change becomes visible... strictly, when the consumer's batch writes it on
-- B; the batch commits a few milliseconds later.
CREATE TABLE IF NOT EXISTS bench_arrival (
    marker     text,
    op         char(1),
    emp_id     integer,
    arrived_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION bench_arrival_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO bench_arrival (marker, op, emp_id) VALUES (OLD.emp_id::text, 'd', OLD.emp_id);
    ELSE
        INSERT INTO bench_arrival (marker, op, emp_id)
        VALUES (NEW.city, CASE TG_OP WHEN 'INSERT' THEN 'c' ELSE 'u' END, NEW.emp_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER bench_arrival AFTER INSERT OR UPDATE OR DELETE ON employees
    FOR EACH ROW EXECUTE FUNCTION bench_arrival_capture();
CREATE INDEX IF NOT EXISTS bench_arrival_marker ON bench_arrival (marker, op);
