import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The build goes straight into the Python package's static folder (git-ignored), which the backend serves at /.
const outDir = fileURLToPath(new URL("../src/gophergate/static", import.meta.url));

export default defineConfig({
  base: "/",
  build: {
    outDir,
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
  server: {
    // `npm run dev` proxies the API and the WebSocket to a running gateway (or ui/dev/mock_server.py).
    proxy: {
      "/api": "http://127.0.0.1:8080",
      "/ws": { target: "ws://127.0.0.1:8080", ws: true },
    },
  },
});
