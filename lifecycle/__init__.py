"""Day-2 operations computed from the synthesized templates: update preview, destroy plan,
replacement guard, deploy critical path. Offline; boto3 only where a command reads a deployed stack."""
