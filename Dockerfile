# The demo as a container: non-root user (uid 1000, as Hugging Face Spaces runs it), port 7860.
#   docker build -t latentindigo .                      # CPU torch, bundled offline prior
#   docker build --build-arg TORCH=cu126 -t latentindigo:cuda .   # CUDA torch for GPUs
#   docker run -p 7860:7860 latentindigo                # add --gpus all for the CUDA image
FROM python:3.11-slim

# "cpu" or a CUDA wheel index of download.pytorch.org, e.g. cu126
ARG TORCH=cpu
ENV PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HOME=/home/user/.cache/huggingface

RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY --chown=user requirements.txt ./
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/${TORCH} \
 && pip install --no-cache-dir -r requirements.txt

COPY --chown=user . .
USER user
EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
