"""An OTLP/HTTP trace receiver for the tracing tests: decodes each export with the
official OpenTelemetry protobuf definitions (opentelemetry-proto from PyPI) and prints
one JSON line per span on stdout; the first line is the port it listens on. A request
that is not a protobuf export to /v1/traces is answered 400 and printed as an error."""

import http.server
import json
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def attributes(pairs):
    return {kv.key: value(kv.value) for kv in pairs}


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        problem = None
        if self.path != "/v1/traces":
            problem = "path " + self.path
        elif self.headers.get("content-type") != "application/x-protobuf":
            problem = "content-type " + str(self.headers.get("content-type"))
        if problem is None:
            try:
                request = ExportTraceServiceRequest.FromString(body)
            except Exception as error:  # a malformed export
                problem = "decode: " + repr(error)
        if problem is not None:
            print(json.dumps({"error": problem}), flush=True)
            self.send_response(400)
            self.end_headers()
            return
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    print(
                        json.dumps(
                            {
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "name": span.name,
                                "kind": span.kind,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "status_code": span.status.code,
                                "flags": span.flags,
                                "attributes": attributes(span.attributes),
                                "resource": resource,
                                "scope": scope_spans.scope.name,
                            }
                        ),
                        flush=True,
                    )
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
sys.stdout.flush()
server.serve_forever()
