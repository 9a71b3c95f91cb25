"""HTTP transport: routes, middleware and error rendering. No model logic lives here."""
