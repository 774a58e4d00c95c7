"""A week-3 homework written for Prefect 2.0 beta, as students wrote it in 2022; it runs here unchanged.

Put the months in ./data (``fhv_tripdata_2021-06.parquet`` and ``-07`` for a run dated 2021-08-15),
then:

    python -m pipeline deployment create examples/prefect2/homework.py
    python -m pipeline trigger --deployment cron-schedule-deployment --date 2021-08-15
    python -m pipeline scheduler            # runs it; the dashboard shows its tasks and logs

or run it as a script, like ``python homework.py`` under Prefect: ``python -m pipeline.prefect2
examples/prefect2/homework.py``. Runs work in this file's folder (./data, ./models).
"""
import pickle
from datetime import datetime
from pathlib import Path

import pandas as pd
from dateutil.relativedelta import relativedelta
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error

from prefect import flow, get_run_logger, task
from prefect.deployments import DeploymentSpec
from prefect.flow_runners import SubprocessFlowRunner
from prefect.orion.schemas.schedules import CronSchedule
from prefect.task_runners import SequentialTaskRunner


@task
def get_paths(date):
    train = date - relativedelta(months=2)
    val = date - relativedelta(months=1)
    return (f"./data/fhv_tripdata_{train:%Y-%m}.parquet",
            f"./data/fhv_tripdata_{val:%Y-%m}.parquet")


@task
def read_data(path):
    return pd.read_parquet(path)


@task
def prepare_features(df, categorical, train=True):
    logger = get_run_logger()
    df['duration'] = (df.dropOff_datetime - df.pickup_datetime).dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
    logger.info(f"The mean duration of {'training' if train else 'validation'} is {df.duration.mean()}")
    df[categorical] = df[categorical].fillna(-1).astype('int').astype('str')
    return df


@task
def train_model(df, categorical):
    logger = get_run_logger()
    dv = DictVectorizer()
    X_train = dv.fit_transform(df[categorical].to_dict(orient='records'))
    y_train = df.duration.values
    logger.info(f"The shape of X_train is {X_train.shape}")
    lr = LinearRegression()
    lr.fit(X_train, y_train)
    mse = mean_squared_error(y_train, lr.predict(X_train), squared=False)
    logger.info(f"The MSE of training is: {mse}")
    return lr, dv


@task
def run_model(df, categorical, dv, lr):
    y_pred = lr.predict(dv.transform(df[categorical].to_dict(orient='records')))
    mse = mean_squared_error(df.duration.values, y_pred, squared=False)
    get_run_logger().info(f"The MSE of validation is: {mse}")


@flow(task_runner=SequentialTaskRunner())
def main(date: datetime = None):
    date = date or datetime.today()
    categorical = ['PUlocationID', 'DOlocationID']
    train_path, val_path = get_paths(date).result()
    df_train = prepare_features(read_data(train_path), categorical)
    df_val = prepare_features(read_data(val_path), categorical, False)
    lr, dv = train_model(df_train, categorical).result()
    Path("models").mkdir(exist_ok=True)
    with open(f"models/model-{date:%Y-%m-%d}.bin", "wb") as f_out:
        pickle.dump(lr, f_out)
    with open(f"models/dv-{date:%Y-%m-%d}.b", "wb") as f_out:
        pickle.dump(dv, f_out)
    run_model(df_val, categorical, dv, lr)


main(date="2021-08-15")

DeploymentSpec(
    flow=main,
    name="cron-schedule-deployment",
    schedule=CronSchedule(cron="0 9 15 * *", timezone="America/New_York"),
    flow_runner=SubprocessFlowRunner(),
    tags=["ml"],
)
