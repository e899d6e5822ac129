# The AWS Lambda container image of the recognizer: inference only, with the staged model baked in.
#
#   docker build --platform linux/amd64 -t text-recognizer .
#   docker run -p 9000:8080 text-recognizer      # AWS's base image includes the Runtime Interface Emulator
#   curl -d '{"image": "data:image/png;base64,..."}' http://localhost:9000/2015-03-31/functions/function/invocations
#
# `text-recognizer deploy` (nbs/53_deploy.ipynb) pushes it to ECR and runs it on Lambda.
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.11
FROM ${BASE_IMAGE}

# Inference-only dependencies: pyproject.toml's `inference` extra (onnxruntime + awslambdaric) and
# the predictor's numpy and Pillow, in the versions setup/constraints.txt pins. Nothing from training
# (no Lightning, W&B, datasets). awslambdaric is already in AWS's base image; it is installed for other
# base images, which then need ENTRYPOINT ["python", "-m", "awslambdaric"].
#
# The ONNX Runtime backend needs no torch. For the TorchScript backend (model.pt), build with
#   --build-arg WITH_TORCH=1
# which adds CPU-only torch from the PyTorch CPU index (no CUDA libraries; PyPI's
# default torch wheel would pull ~2.5 GB of CUDA that a Lambda function can never use).
ARG WITH_TORCH=0
RUN pip install --no-cache-dir "onnxruntime==1.32.0" "awslambdaric==4.2.2" "numpy==2.4.6" "pillow==12.3.0" \
    && if [ "${WITH_TORCH}" = "1" ]; then \
        pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"; \
    fi

# Only the library and the staged model (text_recognizer/artifacts/); .dockerignore keeps the rest out.
COPY text_recognizer/ ${LAMBDA_TASK_ROOT}/text_recognizer/

# The model is loaded in Lambda's init phase (see nbs/51_serverless.ipynb), once per container.
CMD ["text_recognizer.serverless.handler"]
