#!/usr/bin/env bash
# Creates .venv-interop with the official signing SDKs the interop tests drive:
# huaweicloudsdkcore (the Huawei Cloud core SDK signer) and apigateway-sdk-python (a
# packaging of the standalone APIG signer), the official `openai` client the README's
# example uses, schemathesis (the OpenAPI document's conformance test) and
# opentelemetry-proto (the OTLP definitions the tracing test decodes exported spans with)
# and Playwright (which drives Debian's chromium through the console; it downloads no
# browser of its own).
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-interop
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import huaweicloudsdkcore.signer.signer, apigateway_sdk_python.signer, openai, schemathesis, opentelemetry.proto.collector.trace.v1.trace_service_pb2, playwright.sync_api' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  'huaweicloudsdkcore==3.1.219' 'apigateway-sdk-python==1.0.0' 'openai==3.63.0' \
  'schemathesis==4.32.5' 'opentelemetry-proto==1.45.2' 'playwright==1.65.3'
"$venv/bin/python" -c 'import huaweicloudsdkcore.signer.signer, apigateway_sdk_python.signer, openai, schemathesis, opentelemetry.proto.collector.trace.v1.trace_service_pb2, playwright.sync_api'
