// Point RequireJS at the widget manager vendored next to this file, so that the modules and
// fonts it loads come from the book itself and the page works offline. The widget bundles
// compute their asset paths from their module URLs, so every @jupyter-widgets module id
// (html-manager/dist/*, base, controls, ...) must resolve into the vendor folder.
(function () {
  var vendor = document.currentScript.src.replace(/[^/]*$/, "") + "vendor";
  require.config({
    paths: {
      "@jupyter-widgets/html-manager/dist": vendor,
      "@jupyter-widgets": vendor,
    },
  });
})();
