// Package goconformance runs containerd's own content and snapshot test
// suites (containerd v1.6, pinned in go.mod) against a daemon reached over
// gRPC, through containerd's own proxies: the same client code that
// containerd's integration tests use against containerd itself. It holds no
// checks of its own; daemon/tests/go_conformance.rs runs it against
// containerd 1.6 and crated and compares the outcomes case by case.
//
// The daemon's socket comes from -conformance.address or
// $CONFORMANCE_ADDRESS; without one every test fails, so that a run that
// reached no daemon never looks like a pass.
package goconformance

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/content"
	contentproxy "github.com/containerd/containerd/content/proxy"
	"github.com/containerd/containerd/content/testsuite"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/leases"
	leasesproxy "github.com/containerd/containerd/leases/proxy"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	snapshotproxy "github.com/containerd/containerd/snapshots/proxy"
	snapshotsuite "github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

var (
	address = flag.String("conformance.address", os.Getenv("CONFORMANCE_ADDRESS"),
		"unix socket of the daemon under test (default $CONFORMANCE_ADDRESS)")
	snapshotter = flag.String("conformance.snapshotter", envOr("CONFORMANCE_SNAPSHOTTER", "overlayfs"),
		"snapshotter the snapshot suite drives (default $CONFORMANCE_SNAPSHOTTER or overlayfs)")
)

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

// dial opens one gRPC connection per suite case, as containerd's
// integration tests open one client per case, so that a case cannot leave a
// broken connection behind for the next.
func dial(t testing.TB) (*grpc.ClientConn, error) {
	if *address == "" {
		t.Fatal("no daemon address: pass -conformance.address or set CONFORMANCE_ADDRESS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	//nolint:staticcheck // DialContext with WithBlock is what grpc 1.4x offers to wait for the socket
	return grpc.DialContext(ctx, "unix://"+*address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithBlock(),
		// containerd's client raises the receive limit the same way; the
		// suites read whole blobs in one message.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)),
	)
}

// contentStore is the content suite's StoreInitFn. Each context the suite
// derives gets a namespace of its own and a lease in it, as the Go client's
// WithLease does (random id, 24 h expiry): blobs written in a case must
// survive the daemon's collector until the case ends. The cleanup aborts
// open ingests and deletes the blobs in every namespace the case used, so
// that the next case (which reuses the same namespace names) starts empty.
func contentStore(t *testing.T) testsuite.StoreInitFn {
	return func(ctx context.Context, _ string) (context.Context, content.Store, func() error, error) {
		conn, err := dial(t)
		if err != nil {
			return nil, nil, nil, err
		}
		var (
			count uint64
			cs    = contentproxy.NewContentStore(contentapi.NewContentClient(conn))
			lm    = leasesproxy.NewLeaseManager(leasesapi.NewLeasesClient(conn))
			name  = testsuite.Name(ctx)
		)
		wrap := func(ctx context.Context) (context.Context, func(context.Context) error, error) {
			n := atomic.AddUint64(&count, 1)
			ctx = namespaces.WithNamespace(ctx, fmt.Sprintf("%s-n%d", name, n))
			l, err := lm.Create(ctx, leases.WithRandomID(), leases.WithExpiration(24*time.Hour))
			if err != nil {
				return ctx, nil, err
			}
			return leases.WithLease(ctx, l.ID), func(ctx context.Context) error {
				return lm.Delete(ctx, l)
			}, nil
		}
		ctx = testsuite.SetContextWrapper(ctx, wrap)

		cleanup := func() error {
			defer conn.Close()
			for i := uint64(1); i <= atomic.LoadUint64(&count); i++ {
				nctx := namespaces.WithNamespace(context.Background(), fmt.Sprintf("%s-n%d", name, i))
				statuses, err := cs.ListStatuses(nctx)
				if err != nil {
					return err
				}
				for _, st := range statuses {
					if err := abort(nctx, cs, st.Ref); err != nil {
						return err
					}
				}
				err = cs.Walk(nctx, func(info content.Info) error {
					if err := cs.Delete(nctx, info.Digest); err != nil && !errdefs.IsNotFound(err) {
						return err
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		}
		return ctx, cs, cleanup, nil
	}
}

// abort removes ingest ref, retrying for a few seconds. The suite's last
// step closes a writer and returns; the daemon may still be closing that
// writer when the cleanup runs (containerd 1.6 then fails the abort with
// "directory not empty" as its writer rewrites a timestamp file while the
// ingest directory is being removed). That race is in the harness, not in
// what the suite checks, so it must not fail a case.
func abort(ctx context.Context, cs content.Store, ref string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := cs.Abort(ctx, ref)
		if err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("abort %s: %w", ref, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestContent runs containerd's ContentSuite.
func TestContent(t *testing.T) {
	testsuite.ContentSuite(t, "ContentProxy", contentStore(t))
}

// TestContentCrossNSShared runs the cross-namespace cases that hold under
// content_sharing_policy = "shared" (containerd's default).
func TestContentCrossNSShared(t *testing.T) {
	testsuite.ContentCrossNSSharedSuite(t, "ContentProxyShared", contentStore(t))
}

// TestContentCrossNSIsolated runs the cross-namespace case that holds under
// content_sharing_policy = "isolated"; run it only against a daemon so
// configured.
func TestContentCrossNSIsolated(t *testing.T) {
	testsuite.ContentCrossNSIsolatedSuite(t, "ContentProxyIsolated", contentStore(t))
}

// TestSnapshotter runs containerd's SnapshotterSuite through the snapshots
// service, like containerd's integration test of its client: no lease (the
// suite labels what it commits as a gc root), namespace "testsuite" set by
// the suite, and the mounts the daemon returns are mounted here, so this
// process must run as root on the daemon's host.
func TestSnapshotter(t *testing.T) {
	snapshotsuite.SnapshotterSuite(t, *snapshotter, func(ctx context.Context, _ string) (snapshots.Snapshotter, func() error, error) {
		conn, err := dial(t)
		if err != nil {
			return nil, nil, err
		}
		sn := snapshotproxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), *snapshotter)
		return sn, conn.Close, nil
	})
}
