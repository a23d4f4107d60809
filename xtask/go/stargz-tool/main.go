// stargz-tool: test helper for crated's remote snapshotter tests.
//
//	stargz-tool serve ROOT SOCKET CONFIG.toml   the stargz snapshotter over gRPC
//	stargz-tool convert IN.tar OUT.blob         an eStargz layer; prints JSON
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/service"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/grpc"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "stargz-tool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 4 && args[0] == "serve" {
		return serve(args[1], args[2], args[3])
	}
	if len(args) == 3 && args[0] == "convert" {
		return convert(args[1], args[2])
	}
	return fmt.Errorf("usage: serve ROOT SOCKET CONFIG | convert IN OUT")
}

func serve(root, socket, configPath string) error {
	var cfg service.Config
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return err
	}
	if err := toml.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("%s: %w", configPath, err)
	}
	ctx := context.Background()
	sn, err := service.NewStargzSnapshotterService(ctx, root, &cfg)
	if err != nil {
		return err
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		rpc.Stop()
	}()
	serveErr := rpc.Serve(l)
	closeErr := sn.Close()
	if serveErr != nil {
		return serveErr
	}
	return closeErr
}

func convert(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	blob, err := estargz.Build(io.NewSectionReader(f, 0, st.Size()))
	if err != nil {
		return err
	}
	defer blob.Close()
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(o, h), blob)
	if err != nil {
		return err
	}
	if err := o.Close(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"digest":     fmt.Sprintf("sha256:%x", h.Sum(nil)),
		"size":       size,
		"diff_id":    blob.DiffID().String(),
		"toc_digest": blob.TOCDigest().String(),
	})
}
