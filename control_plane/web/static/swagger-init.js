// Starts the vendored Swagger UI on the document named by this script tag's data-spec-url.
// A separate file (not inline) so the pages can keep a strict Content-Security-Policy.
(function () {
  var spec = document.currentScript.getAttribute("data-spec-url");
  window.ui = SwaggerUIBundle({
    url: spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
