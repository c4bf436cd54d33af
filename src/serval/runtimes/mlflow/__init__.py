"""MLflow models: a version folder holding an ``MLmodel`` file.

``mlflow`` (runtime ``mlflow``, chosen by the ``MLmodel`` file) serves the model through its
``python_function`` flavor; ``native`` (chosen in ``model.yaml``) serves the artifact of a
flavor serval runs itself (scikit-learn, XGBoost, LightGBM, ONNX) with serval's runtime for it.
See docs/runtimes/mlflow.md.
"""
