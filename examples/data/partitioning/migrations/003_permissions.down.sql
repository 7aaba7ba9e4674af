DROP TABLE IF EXISTS dashboard_permissions;
DROP TABLE IF EXISTS report_folder_permissions;
