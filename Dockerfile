# funnelhub: one image, one binary; docker-compose picks the subcommand per service.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin funnelhub

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 funnelhub
COPY --from=build /src/target/release/funnelhub /usr/local/bin/funnelhub
USER funnelhub
ENTRYPOINT ["funnelhub"]
CMD ["--help"]
