CREATE TABLE "templates" (
	"id" text PRIMARY KEY NOT NULL,
	"owner_id" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"shared" boolean DEFAULT false NOT NULL,
	"spec" jsonb NOT NULL,
	"state" text NOT NULL,
	"recipe_hash" text,
	"digest" text,
	"size_bytes" bigint,
	"failure" text,
	"log" text DEFAULT '' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"built_at" timestamp with time zone,
	CONSTRAINT "templates_owner_id_name_key" UNIQUE("owner_id","name"),
	CONSTRAINT "templates_state_check" CHECK ("templates"."state" IN ('building', 'ready', 'failed'))
);
--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "template_id" text;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_owner_id_fkey" FOREIGN KEY ("owner_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;