"""The workflow service (gRPC `atelier.workflow.v1.WorkflowService`). See docs/services/workflow.md."""
