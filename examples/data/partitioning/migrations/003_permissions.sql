-- Who may see or change a report folder or a dashboard (seed 002: report_folder_permissions,
-- dashboard_permissions). One row per (object, user); the owner needs no row.
CREATE TABLE report_folder_permissions (
    folder_id  uuid NOT NULL REFERENCES report_folders (folder_id) ON DELETE CASCADE,
    user_id    uuid NOT NULL,
    permission text NOT NULL CHECK (permission IN ('view', 'edit', 'admin')),
    granted_by uuid,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (folder_id, user_id)
);
-- "What can this user see?" is the hot query: by user.
CREATE INDEX report_folder_permissions_user_idx ON report_folder_permissions (user_id, folder_id);

CREATE TABLE dashboard_permissions (
    dashboard_id uuid NOT NULL REFERENCES dashboards (dashboard_id) ON DELETE CASCADE,
    user_id      uuid NOT NULL,
    permission   text NOT NULL CHECK (permission IN ('view', 'edit', 'admin')),
    granted_by   uuid,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dashboard_id, user_id)
);
CREATE INDEX dashboard_permissions_user_idx ON dashboard_permissions (user_id, dashboard_id);
