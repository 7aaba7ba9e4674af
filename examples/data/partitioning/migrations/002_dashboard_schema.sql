-- Dashboards (seed 002, phase 2.2; the original 035_create_dashboard_schema.sql).
CREATE TABLE dashboards (
    dashboard_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL,
    description  text,
    owner_id     uuid NOT NULL,
    program_id   uuid REFERENCES pilot_programs (program_id) ON DELETE SET NULL,
    layout       jsonb NOT NULL DEFAULT '{"columns": 12}'::jsonb,
    is_default   boolean NOT NULL DEFAULT false,
    is_public    boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dashboards_owner_idx ON dashboards (owner_id);
CREATE INDEX dashboards_program_idx ON dashboards (program_id);
-- At most one default dashboard per owner.
CREATE UNIQUE INDEX dashboards_one_default_per_owner ON dashboards (owner_id) WHERE is_default;

CREATE TABLE dashboard_widgets (
    widget_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dashboard_id uuid NOT NULL REFERENCES dashboards (dashboard_id) ON DELETE CASCADE,
    report_id    uuid REFERENCES saved_reports (report_id) ON DELETE SET NULL,
    widget_type  text NOT NULL CHECK (widget_type IN ('report', 'metric', 'text', 'image')),
    title        text,
    position     jsonb NOT NULL DEFAULT '{"x": 0, "y": 0, "w": 4, "h": 3}'::jsonb,
    settings     jsonb NOT NULL DEFAULT '{}'::jsonb,
    sort_order   integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dashboard_widgets_dashboard_order_idx ON dashboard_widgets (dashboard_id, sort_order);
CREATE INDEX dashboard_widgets_report_idx ON dashboard_widgets (report_id);
