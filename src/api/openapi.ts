// /openapi/v2 and /openapi/v3 (kubectl.md §0.3, §3.9). kubectl's validation of apply/replace/create -f/
// edit needs /openapi/v2 to answer 200 with a protobuf-parseable body: an empty body is a valid empty
// OpenAPI Document, so kubectl finds no schema and leaves validation to the server (fieldValidation=Strict).
// /openapi/v3 answers 404, after which kubectl falls back to v2.
export const OPENAPI_V2_CONTENT_TYPE = 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf';
