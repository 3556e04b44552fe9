"""The HTTP gateway: the only public entry point. Owns auth, payment callbacks and SSE; speaks gRPC inward."""
