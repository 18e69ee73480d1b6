//! dialgate control plane: configuration, users and tokens, IKE driver and `diagnose`.
