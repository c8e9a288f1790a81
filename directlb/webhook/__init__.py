"""The HTTPS admission server (AdmissionReview v1) and its certificate authority."""
