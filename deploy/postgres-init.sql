-- Databases beside Airflow's (created by POSTGRES_DB): MLflow's tracking/registry store and the
-- pushbutton platform store (serving history, later indicators).
CREATE DATABASE mlflow OWNER pushbutton;
CREATE DATABASE pushbutton OWNER pushbutton;
