"""Policy-as-code: Rego policies, their tests, and the OPA engine adapters."""
