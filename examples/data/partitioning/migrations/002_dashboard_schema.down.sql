DROP TABLE IF EXISTS dashboard_widgets;
DROP TABLE IF EXISTS dashboards;
