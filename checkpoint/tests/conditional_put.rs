//! The conditional-put probe of `Checkpoint::claim` on a store other than a local
//! directory: a store that refuses create-only writes, or one that silently ignores their
//! condition (it would let two runs overwrite each other's log entries), makes the claim,
//! and so a query's `start()`, fail saying so, having written nothing; a store that honours
//! them passes, once per `Checkpoint`. (tests/s3.rs checks the refusing case on moto's
//! S3 server with `s3.conditionalPut=disabled`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use sluice_checkpoint::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Create {
    /// `PutMode::Create` fails with `NotImplemented` (object_store's S3 client with
    /// `conditional_put=disabled`).
    Refused,
    /// `PutMode::Create` overwrites (a server that ignores `If-None-Match: *`).
    Ignored,
    /// As the inner store.
    Honoured,
}

/// InMemory with create-only writes refused, ignored or honoured; counts conditional puts.
#[derive(Debug)]
struct Store {
    inner: InMemory,
    create: Create,
    creates: AtomicUsize,
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.create)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Store {
    async fn put_opts(&self, location: &Path, payload: PutPayload, mut opts: PutOptions) -> object_store::Result<PutResult> {
        if opts.mode == PutMode::Create {
            self.creates.fetch_add(1, Ordering::Relaxed);
            match self.create {
                Create::Refused => {
                    return Err(object_store::Error::NotImplemented {
                        operation: "put_opts with PutMode::Create".into(),
                        implementer: self.to_string(),
                    })
                }
                Create::Ignored => opts.mode = PutMode::Overwrite,
                Create::Honoured => {}
            }
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn checkpoint(create: Create) -> (Checkpoint, Arc<Store>) {
    let store = Arc::new(Store { inner: InMemory::new(), create, creates: AtomicUsize::new(0) });
    let ck = Checkpoint::with_store(store.clone(), Path::from("ck"), "s3://bucket/ck").unwrap();
    (ck, store)
}

fn objects(store: &Store) -> Vec<String> {
    use futures::TryStreamExt;
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let listed: Vec<ObjectMeta> = rt.block_on(store.list(None).try_collect()).unwrap();
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

#[test]
fn a_store_that_refuses_create_only_writes_fails_the_claim() {
    let (ck, store) = checkpoint(Create::Refused);
    let e = ck.claim("run-a").unwrap_err();
    assert!(matches!(e, CheckpointError::Unsupported { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("s3://bucket/ck") && text.contains("does not do conditional puts"), "{text}");
    assert!(objects(&store).is_empty(), "nothing was written: {:?}", objects(&store));
}

#[test]
fn a_store_that_ignores_the_condition_fails_the_claim() {
    let (ck, store) = checkpoint(Create::Ignored);
    let e = ck.claim("run-a").unwrap_err();
    assert!(matches!(e, CheckpointError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("ignores the condition"), "{e}");
    assert!(objects(&store).is_empty(), "the probe was deleted, no claim written: {:?}", objects(&store));
}

#[test]
fn a_store_that_honours_create_only_writes_is_probed_once() {
    let (ck, store) = checkpoint(Create::Honoured);
    ck.claim("run-a").unwrap();
    let after_first = store.creates.load(Ordering::Relaxed);
    assert_eq!(after_first, 3, "two probe writes and the claim");
    ck.claim("run-b").unwrap();
    assert_eq!(store.creates.load(Ordering::Relaxed), after_first + 1, "no second probe: only the claim");
    let left = objects(&store);
    assert!(left.iter().all(|o| !o.contains("probe")), "the probe was deleted: {left:?}");
}
