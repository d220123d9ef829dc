// The management API's own OpenAPI document, from this server. "Try it out" sends real
// requests: sign in with POST /v3/auth/tokens, then give the X-Subject-Token it answers to
// "Authorize" (X-Auth-Token).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null,
});
